// Package config reads and checks canal's TOML configuration file.
//
// [Load] decodes the file strictly (an unknown key is an error, never ignored), applies
// the environment's overrides (CANAL_LISTEN, CANAL_ADMIN_LISTEN, CANAL_REDIS_URL,
// CANAL_LOG_LEVEL, CANAL_LOG_FORMAT) and secrets (CANAL_SESSION_TOKEN,
// CANAL_DJANGO_TOKEN, CANAL_LAYER_SYMMETRIC_ENCRYPTION_KEYS: never read from the file),
// fills the defaults, and checks everything it can without a network: addresses,
// URLs, route patterns, templates and predicates (package expr), receive modes and
// the secrets they need. Every problem is reported, each as file:line, the key path
// ("route[1].groups[0]") and what was expected, so `canal check` can list them all at
// once. Errors never quote a secret or a Redis URL.
//
// The file's reference is the documentation of the canal command (cmd/canal/doc.go).
package config
