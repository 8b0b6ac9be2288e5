# Raw message as JSON: the event itself, as Postee's raw JSON template gives it.
package conformance.raw.json

title := "Raw message"

result := input
