"""The pure core: request languages, plans, naming, decoding, selection, imaging and the engine.

Nothing here imports AWS code (boto3, botocore, powertools) or the local tools.
"""
