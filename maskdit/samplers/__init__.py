"""maskdit.samplers"""
