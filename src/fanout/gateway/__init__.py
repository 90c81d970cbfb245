"""API Gateway: the management-API client, the lifecycle handlers and the local emulator."""
