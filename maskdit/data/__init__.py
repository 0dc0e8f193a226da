"""maskdit.data"""
