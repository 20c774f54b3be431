"""Local tools: the CLI, the local server and its page, the demo and the media synthesiser.

Not shipped in the Lambda layer.
"""
