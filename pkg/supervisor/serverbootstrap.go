package supervisor

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/sirupsen/logrus"
)

// ServerBootstrapPath, under JoinPrefix, is where a server joining the
// cluster gets the files every server shares.
const ServerBootstrapPath = "server-bootstrap"

// errAgentOnlyToken answers a valid token that may join agents but not
// servers.
var errAgentOnlyToken = errors.New("that token joins agents only; a server joins with the cluster token, from `skiff token` or <data-dir>/server/token on a server of the cluster")

// serverBootstrap hands the shared files, sealed with the cluster token, to
// a joining server. They include the CA keys, so only the cluster token
// gets them: agent-only and created join tokens, which the authenticated
// wrapper lets through, are refused here.
func (s *Supervisor) serverBootstrap(w http.ResponseWriter, r *http.Request) {
	user, pass, _ := r.BasicAuth()
	if !credentialsMatch(s.Token, user, pass) {
		logrus.Warnf("refused server bootstrap material to %s: its token joins agents only", sourceOf(r))
		httpError(w, http.StatusForbidden, errAgentOnlyToken)
		return
	}
	if s.ServerBootstrap == nil {
		http.NotFound(w, r)
		return
	}
	body, err := s.ServerBootstrap(r.Context())
	if err != nil {
		logrus.Warnf("server bootstrap material for %s: %v", sourceOf(r), err)
		httpError(w, http.StatusServiceUnavailable, fmt.Errorf("the server bootstrap material is not available yet: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}
