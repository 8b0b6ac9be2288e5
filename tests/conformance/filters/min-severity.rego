# Route scans with a critical finding, or many high ones.
package postee

allow {
	input.vulnerability_summary.critical > 0
}

allow {
	input.vulnerability_summary.high > 5
}
