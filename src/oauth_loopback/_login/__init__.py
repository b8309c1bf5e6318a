"""The login protocol: authorization, tokens, and the building blocks they use."""
