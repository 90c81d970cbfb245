"""The local stack (``fanout dev``): moto for SQS/SNS, SecantusDB, the API Gateway emulator, queue creation.

Development and tests only. Nothing in production code imports this package (``tests/unit/test_layout.py``
checks it).
"""
