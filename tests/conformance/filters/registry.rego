# Route scans from these registries (a `[_]` reference passed to a built-in).
package postee

registries := {"Aqua", "docker.io"}

allow {
	contains(input.registry, registries[_])
}
