// Package archtest holds the tests that keep docs/design.md and the code in
// step (docs/design.md §1, §11): every § citation in the Go sources and the
// markdown documents names a heading that exists, the import rules of
// docs/design.md §11 hold (and bbolt stays inside the two storage packages),
// and docs/design.md §1 lists every package of the module. It has no code of
// its own: `go test ./internal/archtest` runs the checks, reading the sources
// with go/parser, never compiling them, so it stays fast.
package archtest
