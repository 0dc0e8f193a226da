"""maskdit.eval"""
