// Command pushimage pushes OCI layout tarballs (what mkimage writes) to a
// registry through the distribution API, under their names without the
// registry host: the registry scripts/conformance runs is the nodes' mirror
// for registry.k8s.io, and a mirror is asked for the path alone.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"
)

// descriptor is the part of an OCI descriptor the push needs.
type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type index struct {
	Manifests []descriptor `json:"manifests"`
}

type manifest struct {
	Config descriptor   `json:"config"`
	Layers []descriptor `json:"layers"`
}

const nameAnnotation = "io.containerd.image.name"

func main() {
	registry := flag.String("registry", "", "the registry's base URL, e.g. http://198.18.0.1:5000")
	flag.Parse()
	if *registry == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: pushimage -registry URL FILE.tar...")
		os.Exit(2)
	}
	base, err := url.Parse(*registry)
	if err != nil || base.Host == "" {
		fmt.Fprintf(os.Stderr, "pushimage: -registry %q is not a URL like http://host:port\n", *registry)
		os.Exit(2)
	}
	p := pusher{base: base, client: &http.Client{Timeout: 5 * time.Minute}}
	for _, file := range flag.Args() {
		if err := p.pushArchive(file); err != nil {
			fmt.Fprintf(os.Stderr, "pushimage: %s: %v\n", file, err)
			os.Exit(1)
		}
	}
}

type pusher struct {
	base   *url.URL
	client *http.Client
}

// pushArchive pushes every image an OCI layout tarball names.
func (p pusher) pushArchive(file string) error {
	var idx index
	if err := readJSON(file, "index.json", &idx); err != nil {
		return err
	}
	if len(idx.Manifests) == 0 {
		return errors.New("index.json names no image")
	}
	for _, m := range idx.Manifests {
		name := m.Annotations[nameAnnotation]
		if name == "" {
			return fmt.Errorf("manifest %s has no %s annotation", m.Digest, nameAnnotation)
		}
		repo, tag, err := splitName(name)
		if err != nil {
			return err
		}
		raw, err := readEntry(file, blobPath(m.Digest))
		if err != nil {
			return err
		}
		var man manifest
		if err := json.Unmarshal(raw, &man); err != nil {
			return fmt.Errorf("manifest %s: %w", m.Digest, err)
		}
		for _, blob := range append([]descriptor{man.Config}, man.Layers...) {
			if err := p.pushBlob(file, repo, blob); err != nil {
				return fmt.Errorf("%s: blob %s: %w", name, blob.Digest, err)
			}
		}
		if err := p.putManifest(repo, tag, m.MediaType, raw); err != nil {
			return fmt.Errorf("%s: manifest: %w", name, err)
		}
		fmt.Printf("pushed %s as %s:%s\n", name, repo, tag)
	}
	return nil
}

// splitName turns registry.k8s.io/e2e-test-images/agnhost:2.66.1 into the
// repository e2e-test-images/agnhost and the tag 2.66.1.
func splitName(name string) (repo, tag string, err error) {
	host, rest, ok := strings.Cut(name, "/")
	if !ok || !strings.ContainsAny(host, ".:") {
		return "", "", fmt.Errorf("image name %q has no registry host", name)
	}
	i := strings.LastIndex(rest, ":")
	if i < 0 || strings.Contains(rest[i:], "/") {
		return "", "", fmt.Errorf("image name %q has no tag", name)
	}
	return rest[:i], rest[i+1:], nil
}

func blobPath(digest string) string { return "blobs/" + strings.Replace(digest, ":", "/", 1) }

func (p pusher) url(rel string) string {
	u := *p.base
	u.Path = strings.TrimSuffix(p.base.Path, "/") + rel
	return u.String()
}

// pushBlob uploads one blob unless the registry has it: a monolithic
// upload, a POST for the session and a PUT of the content.
func (p pusher) pushBlob(file, repo string, blob descriptor) error {
	resp, err := p.client.Head(p.url("/v2/" + repo + "/blobs/" + blob.Digest))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	resp, err = p.client.Post(p.url("/v2/"+repo+"/blobs/uploads/"), "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("start upload: %s", resp.Status)
	}
	loc, err := p.base.Parse(resp.Header.Get("Location"))
	if err != nil {
		return fmt.Errorf("start upload: Location: %w", err)
	}
	q := loc.Query()
	q.Set("digest", blob.Digest)
	loc.RawQuery = q.Encode()

	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	content, err := findEntry(tar.NewReader(f), blobPath(blob.Digest))
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPut, loc.String(), io.LimitReader(content, blob.Size))
	if err != nil {
		return err
	}
	req.ContentLength = blob.Size
	req.Header.Set("Content-Type", "application/octet-stream")
	return p.do(req, http.StatusCreated)
}

func (p pusher) putManifest(repo, tag, mediaType string, raw []byte) error {
	req, err := http.NewRequest(http.MethodPut, p.url("/v2/"+repo+"/manifests/"+tag), bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", mediaType)
	return p.do(req, http.StatusCreated)
}

func (p pusher) do(req *http.Request, want int) error {
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// findEntry advances tr to the entry called name.
func findEntry(tr *tar.Reader, name string) (io.Reader, error) {
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("no %s in the archive", name)
		}
		if err != nil {
			return nil, fmt.Errorf("read the archive: %w", err)
		}
		if path.Clean(h.Name) == name {
			return tr, nil
		}
	}
}

func readEntry(file, name string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := findEntry(tar.NewReader(f), name)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(r, 4<<20))
}

func readJSON(file, name string, v any) error {
	raw, err := readEntry(file, name)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
