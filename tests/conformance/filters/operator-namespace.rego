# Route trivy-operator reports of workloads in these namespaces.
package postee

namespaces := ["default", "prod-"]

allow {
	startswith(input.metadata.namespace, namespaces[_])
}
