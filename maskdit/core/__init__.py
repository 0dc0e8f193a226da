"""maskdit.core"""
