"""maskdit.losses"""
