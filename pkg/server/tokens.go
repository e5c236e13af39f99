package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/kubeclient"
	"github.com/skiff-io/skiff/pkg/layout"
	"github.com/skiff-io/skiff/pkg/pki"
	"github.com/skiff-io/skiff/pkg/supervisor"
)

// Tokens runs `skiff token create|list|delete` against the local server.
func Tokens(ctx context.Context, req *config.TokenRequest) error {
	l := layout.New(req.DataDir).Server
	admin := l.AdminKubeconfig
	if _, err := os.Stat(admin); err != nil {
		return fmt.Errorf("no server credentials at %s (%v): run this on the server, as root, with its --data-dir", admin, unwrapPath(err))
	}
	tokens := &supervisor.JoinTokens{Client: kubeclient.Lazy(admin)}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch req.Op {
	case "create":
		stored, err := os.ReadFile(l.TokenFile)
		if err != nil {
			return fmt.Errorf("read the server token for its CA hash: %w", err)
		}
		server, err := pki.ParseToken(string(stored))
		if err != nil {
			return fmt.Errorf("stored token %s: %w", l.TokenFile, err)
		}
		t, err := tokens.Create(ctx, req.TTL, req.Description)
		if err != nil {
			return serverError(err)
		}
		full := pki.Token{CAHash: server.CAHash, Username: t.ID, Password: t.Secret}
		_, err = fmt.Fprintln(req.Out, full.String())
		return err
	case "list":
		list, err := tokens.List(ctx)
		if err != nil {
			return serverError(err)
		}
		w := tabwriter.NewWriter(req.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tEXPIRES\tDESCRIPTION")
		for _, t := range list {
			expires := "never"
			if !t.Expires.IsZero() {
				expires = t.Expires.Format(time.RFC3339)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\n", t.ID, expires, t.Description)
		}
		return w.Flush()
	case "delete":
		return serverError(tokens.Delete(ctx, req.ID))
	}
	return fmt.Errorf("unknown token operation %q", req.Op)
}

func serverError(err error) error {
	if err != nil && (strings.Contains(err.Error(), "connection refused") || errors.Is(err, context.DeadlineExceeded)) {
		return fmt.Errorf("%w; is \"skiff server\" running?", err)
	}
	return err
}
