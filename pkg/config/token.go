package config

import (
	"io"
	"time"
)

// TokenRequest is one `skiff token create|list|delete` invocation.
type TokenRequest struct {
	Op          string // "create", "list" or "delete"
	DataDir     string // the server's data dir: its admin credentials and CA
	TTL         time.Duration
	Description string
	ID          string
	Out         io.Writer
}
