"""Contracts shared by training and the predict function: the store, the artifact, the API schema.

Importing this package is cheap: heavy libraries (boto3, scikit-learn) load only where they are used.
"""
