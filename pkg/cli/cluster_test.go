package cli

import (
	"slices"
	"strings"
	"testing"
)

func TestClusterCreateArguments(t *testing.T) {
	isolate(t)
	r := run(t, "cluster", "create", "--agents", "2", "--image-dir", "/imgs", "ci", "--", "--disable", "metrics-server")
	if r.code != 0 || r.rec.clusterReq == nil {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	req := r.rec.clusterReq
	if req.Op != "create" || req.Name != "ci" || req.Servers != 1 || req.Agents != 2 || req.ImageDir != "/imgs" ||
		!slices.Equal(req.ServerArgs, []string{"--disable", "metrics-server"}) {
		t.Errorf("request %+v", req)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"cluster", "create"}, "name the cluster"},
		{[]string{"cluster", "create", "ci", "--agents", "2"}, `put create's flags before the name`},
		{[]string{"cluster", "create", "--config", "c.yaml", "--agents", "1", "ci"}, "leave out --servers and --agents"},
		{[]string{"cluster", "create", "--servers", "0", "ci"}, "at least one server"},
		{[]string{"cluster", "stop"}, "name one cluster"},
		{[]string{"cluster", "load", "ci"}, "at least one image archive"},
	} {
		r := run(t, c.args...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("skiff %s: exit %d, stderr %q; want an error containing %q", strings.Join(c.args, " "), r.code, r.stderr, c.want)
		}
	}

	r = run(t, "cluster", "load", "ci", "a.tar", "b.tar")
	if r.code != 0 || r.rec.clusterReq.Op != "load" || !slices.Equal(r.rec.clusterReq.Archives, []string{"a.tar", "b.tar"}) {
		t.Errorf("load: exit %d, request %+v", r.code, r.rec.clusterReq)
	}
}
