// Package expr is the tiny language of canal's configuration: group-name templates
// and claim predicates.
//
// # Names
//
// A name is a dotted path into the connection:
//
//	user.id, user.username      the authenticated user (text; "" for anonymous)
//	user.authenticated          true when someone is logged in
//	user.<claim>[.<key>...]     a claim from Django (REALTIME_TICKET_CLAIMS), nested maps by key
//	route.<name>, or <name>     a value captured by the route pattern (<slug:room> gives room)
//
// In a bus template (canal's raw Pub/Sub input) a name is a field of the published
// JSON object instead: {content_type_id}, {meta.tenant}.
//
// # Templates
//
// A template is text with names in braces: "chat_{room}", "user_{user.id}". A name
// whose value is a list expands the template once per item, so
// "ct_{user.content_types}" joins one group per content type. Values print as text:
// strings as they are, integers in decimal, booleans as true/false. A name with no
// value (a missing claim, null, a map, a fraction) makes the whole template fail:
// the connection is refused rather than put in a group shared by everyone the claim
// is missing for. "{{" and "}}" are literal braces.
//
// # Predicates
//
// A predicate is one of:
//
//	NAME                      the value is truthy: true, a non-empty string or list, a non-zero number
//	not NAME                  the value is missing or falsy
//	A == B, A != B            A and B are names or literals ("text", 42, true, false);
//	                          numbers and strings compare as text, so user.id == route.id
//	                          holds for 42 and "42"; booleans equal only booleans
//	A contains B              A is a list holding B (compared as ==)
//
// That is all: no "and" (a route's require list is already "all of"), no "or" (ask
// Django through an authorize URL when the rule is more than that).
package expr
