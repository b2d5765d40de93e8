"""The ARQ worker: jobs that turn recorded exchanges into memory."""
