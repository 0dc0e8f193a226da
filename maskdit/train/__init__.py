"""maskdit.train"""
