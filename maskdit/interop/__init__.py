"""maskdit.interop"""
