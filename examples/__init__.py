"""Examples of enkrypt_async in use."""
