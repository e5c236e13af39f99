//go:build skiff_addon

// This file is no part of skiff's own packages: scripts/build-helpers
// copies it into a copy of the upstream modules it builds
// (local-path-provisioner, metrics-server, the containerd shim), beside
// their main package, which a main of ours cannot import (and the go
// command allows no -overlay into the module cache), and points their
// go.mod at pkg/startpages. The build tag keeps it out of every other
// build.
package main

import "github.com/skiff-io/skiff/pkg/startpages"

// Once started, the program gives back the pages of its executable that
// only its start-up used (pkg/startpages says why).
func init() { startpages.ReleaseLater() }
