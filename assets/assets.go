// Package assets holds the web admin's assets (docs/design.md §5): html/template
// pages in templates/ and the CSS and JavaScript in static/, compiled into
// the binary. Plain files, no build step, nothing fetched from elsewhere.
package assets

import (
	"embed"
	"io/fs"
)

//go:embed templates/*.html static/*
var files embed.FS

// FS is the assets: templates/*.html and static/*.
var FS fs.FS = files
