# Raw message as HTML: the event pretty-printed by Postee's jsonformat built-in.
package conformance.raw.html

title := "Raw message"

result := sprintf("<pre>%s</pre>", [jsonformat(input)])
