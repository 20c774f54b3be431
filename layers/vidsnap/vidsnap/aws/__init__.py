"""AWS adapters: clients, S3 range reading, storage, notify, the task store, Lambda events, settings,
observability, the HTTP app, Object Lambda and the async worker. They use the core, never the local tools.
"""
