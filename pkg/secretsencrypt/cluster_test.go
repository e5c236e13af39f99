package secretsencrypt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseConfigInfo(t *testing.T) {
	text := `# HELP apiserver_encryption_config_controller_last_config_info [ALPHA] Information about the last applied encryption configuration with hash as label, split by apiserver identity.
# TYPE apiserver_encryption_config_controller_last_config_info gauge
apiserver_encryption_config_controller_last_config_info{apiserver_id_hash="sha256:aaa",hash="sha256:bbb"} 1
apiserver_encryption_config_controller_automatic_reloads_total{apiserver_id_hash="sha256:aaa",status="success"} 2
apiserver_encryption_config_controller_last_config_info_other{hash="sha256:zzz"} 1
`
	got, err := parseConfigInfo(strings.NewReader(text))
	if err != nil || len(got) != 1 || got[0] != "sha256:bbb" {
		t.Fatalf("parseConfigInfo = %v, %v", got, err)
	}
	if got, _ := parseConfigInfo(strings.NewReader("up 1\n")); len(got) != 0 {
		t.Fatalf("no metric: %v", got)
	}
}

func TestDescribeLoaded(t *testing.T) {
	for _, c := range []struct {
		hashes []string
		err    error
		want   string
	}{
		{[]string{"sha256:a"}, nil, "yes"},
		{nil, nil, "no (the apiserver runs without an encryption config"},
		{[]string{"sha256:b"}, nil, "no (it has sha256:b"},
		{nil, fmt.Errorf("connection refused"), "unknown (connection refused)"},
	} {
		if got := describeLoaded("sha256:a", c.hashes, c.err); !strings.HasPrefix(got, c.want) {
			t.Errorf("describeLoaded(%v, %v) = %q, want %q...", c.hashes, c.err, got, c.want)
		}
	}
}

// fakeAPIServer serves /metrics and the Secrets endpoints reencrypt uses.
type fakeAPIServer struct {
	t          *testing.T
	files      Files
	mu         sync.Mutex
	metricsHit int
	// loadAfter is the number of /metrics requests before the current file
	// counts as loaded; a negative value never loads it.
	loadAfter int
	secrets   map[string]string // namespace/name -> resourceVersion
	conflicts map[string]int    // namespace/name -> 409 answers left
	updates   map[string]int
	lists     int
}

func (f *fakeAPIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.URL.Path == "/metrics":
		f.metricsHit++
		data, _ := os.ReadFile(f.files.ConfigPath())
		hash := "sha256:old"
		if f.loadAfter >= 0 && f.metricsHit > f.loadAfter {
			hash = Hash(data)
		}
		fmt.Fprintf(w, "# TYPE x gauge\n%s{apiserver_id_hash=\"sha256:id\",hash=%q} 1\n", configInfoMetric, hash)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/secrets":
		f.lists++
		// Two pages, to exercise the continue token.
		keys := []string{"default/a", "kube-system/b", "kube-system/c"}
		page := keys[:2]
		cont := "page2"
		if r.URL.Query().Get("continue") == "page2" {
			page, cont = keys[2:], ""
		}
		var items []map[string]any
		for _, k := range page {
			items = append(items, f.secret(k))
		}
		writeJSON(w, map[string]any{"kind": "SecretList", "apiVersion": "v1", "metadata": map[string]any{"continue": cont}, "items": items})
	case strings.HasPrefix(r.URL.Path, "/api/v1/namespaces/"):
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v1/namespaces/"), "/")
		key := parts[0] + "/" + parts[2]
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, f.secret(key))
		case http.MethodPut:
			if q := r.URL.Query().Get("fieldManager"); q != fieldManager {
				f.t.Errorf("update without field manager: %q", q)
			}
			var obj struct {
				Metadata struct {
					ResourceVersion string `json:"resourceVersion"`
				} `json:"metadata"`
			}
			body, _ := io.ReadAll(r.Body)
			_ = json.Unmarshal(body, &obj)
			if f.conflicts[key] > 0 || obj.Metadata.ResourceVersion != f.secrets[key] {
				f.conflicts[key]--
				f.secrets[key] += "x"
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusConflict)
				writeJSON(w, map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409})
				return
			}
			f.updates[key]++
			f.secrets[key] += "u"
			writeJSON(w, f.secret(key))
		}
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeAPIServer) secret(key string) map[string]any {
	ns, name, _ := strings.Cut(key, "/")
	return map[string]any{"kind": "Secret", "apiVersion": "v1",
		"metadata": map[string]any{"namespace": ns, "name": name, "uid": key, "resourceVersion": f.secrets[key]},
		"data":     map[string]any{"v": "dmFsdWU="}}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func newFakeCluster(t *testing.T, f Files, loadAfter int) (*fakeAPIServer, *Cluster) {
	t.Helper()
	fake := &fakeAPIServer{t: t, files: f, loadAfter: loadAfter,
		secrets:   map[string]string{"default/a": "1", "kube-system/b": "2", "kube-system/c": "3"},
		conflicts: map[string]int{"kube-system/b": 1},
		updates:   map[string]int{},
	}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	kubeconfig := f.Dir + "/admin.kubeconfig"
	kc := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: %s\nusers:\n- name: u\n  user: {}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n", srv.URL)
	if err := os.WriteFile(kubeconfig, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return fake, &Cluster{Kubeconfig: kubeconfig, PollInterval: 10 * time.Millisecond}
}

func TestReencryptRewritesEverySecretThenDropsOldKeys(t *testing.T) {
	f := newFiles(t)
	mustEnsure(t, f, true)
	if _, err := f.Prepare(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Rotate(); err != nil {
		t.Fatal(err)
	}
	fake, cluster := newFakeCluster(t, f, 3)

	if got := cluster.Loaded(context.Background(), mustStatus(t, f).Hash); !strings.HasPrefix(got, "no (it has sha256:old") {
		t.Fatalf("Loaded before the reload: %q", got)
	}

	var out bytes.Buffer
	if err := Reencrypt(context.Background(), f, cluster, time.Minute, &out); err != nil {
		t.Fatalf("Reencrypt: %v\n%s", err, out.String())
	}
	for _, key := range []string{"default/a", "kube-system/b", "kube-system/c"} {
		if fake.updates[key] != 1 {
			t.Errorf("%s updated %d times, want 1", key, fake.updates[key])
		}
	}
	st := mustStatus(t, f)
	if st.Stage != StageReencrypted || strings.Join(st.KeyNames(), ",") != "secretboxkey-2" {
		t.Fatalf("after reencrypt: %s %v", st.Stage, st.KeyNames())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[2], "rewrote 3 Secrets in 2 namespaces") ||
		!strings.Contains(lines[3], "removed key secretboxkey-1") {
		t.Fatalf("progress:\n%s", out.String())
	}
	if got := cluster.Loaded(context.Background(), st.Hash); got != "yes" {
		t.Fatalf("Loaded after: %q", got)
	}
}

func TestReencryptAtStartEncryptsOldSecrets(t *testing.T) {
	f := newFiles(t)
	mustEnsure(t, f, true)
	fake, cluster := newFakeCluster(t, f, 0)
	var out bytes.Buffer
	if err := Reencrypt(context.Background(), f, cluster, time.Minute, &out); err != nil {
		t.Fatal(err)
	}
	if len(fake.updates) != 3 {
		t.Fatalf("updates %v", fake.updates)
	}
	if st := mustStatus(t, f); st.Stage != StageReencrypted || len(st.Keys) != 1 || st.WriteKey() != "secretboxkey-1" {
		t.Fatalf("after reencrypt: %s %v", st.Stage, st.KeyNames())
	}
	if !strings.Contains(out.String(), "no other key to remove") {
		t.Fatalf("progress:\n%s", out.String())
	}
}

func TestReencryptWaitIsBounded(t *testing.T) {
	f := newFiles(t)
	mustEnsure(t, f, true)
	if _, err := f.Prepare(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Rotate(); err != nil {
		t.Fatal(err)
	}
	fake, cluster := newFakeCluster(t, f, -1)
	before := mustStatus(t, f)
	err := Reencrypt(context.Background(), f, cluster, 200*time.Millisecond, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "did not load "+f.ConfigPath()+" within 200ms") {
		t.Fatalf("Reencrypt against an apiserver that never reloads: %v", err)
	}
	if len(fake.updates) != 0 || fake.lists != 0 {
		t.Fatal("Secrets rewritten before the config was loaded")
	}
	if after := mustStatus(t, f); after.Hash != before.Hash {
		t.Fatal("keys removed although the rewrite did not run")
	}
}

func TestReencryptRefusedWhilePrepared(t *testing.T) {
	f := newFiles(t)
	mustEnsure(t, f, true)
	if _, err := f.Prepare(); err != nil {
		t.Fatal(err)
	}
	fake, cluster := newFakeCluster(t, f, 0)
	err := Reencrypt(context.Background(), f, cluster, time.Second, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `stage is prepared; run "skiff secrets-encrypt rotate" next`) {
		t.Fatalf("Reencrypt while prepared: %v", err)
	}
	if fake.metricsHit != 0 {
		t.Fatal("asked the apiserver although refused")
	}
}
