"""Science payloads: data simulation, prompt (alert) and batch (data release) processing."""
