.PHONY: services services-down

# Start the local services the tests need (see scripts/services); writes .services/env.
services:
	scripts/services up

# Stop them.
services-down:
	scripts/services down
