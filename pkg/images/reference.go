package images

import (
	"fmt"
	"regexp"
	"strings"
)

const (
	defaultDomain = "docker.io"
	defaultTag    = "latest"
	// Docker's own limit on domain plus path; registries reject longer names.
	maxRepoLength = 255
)

var (
	pathComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	// The first character is restricted as in the distribution grammar, so
	// tags like "-x" or ".x" that other tools refuse are never produced.
	tagRE    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	domainRE = regexp.MustCompile(`^(?:(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])(?:\.(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]))*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?$`)
)

// Normalize returns the full reference for name ("domain/path:tag"). A name
// whose first component is not a domain (no "." or ":" and not "localhost")
// gets "docker.io/", a single-component Docker Hub path gets "library/", and
// a missing tag becomes "latest". Digest references are rejected because the
// imported image needs a tag for its ref.name annotation.
func Normalize(name string) (string, error) {
	ref, err := parseReference(name)
	if err != nil {
		return "", err
	}
	return ref.String(), nil
}

type reference struct {
	domain string
	path   string
	tag    string
}

func (r reference) String() string {
	return r.domain + "/" + r.path + ":" + r.tag
}

func parseReference(name string) (reference, error) {
	invalid := func(format string, args ...any) (reference, error) {
		return reference{}, fmt.Errorf("invalid image reference %q: %s", name, fmt.Sprintf(format, args...))
	}
	if name == "" {
		return invalid("empty")
	}
	if strings.Contains(name, "@") {
		return invalid("digest references are not supported, a tag is required")
	}

	repo, tag := name, defaultTag
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		repo, tag = name[:i], name[i+1:]
		if !tagRE.MatchString(tag) {
			return invalid("tag %q must be 1-128 characters of [A-Za-z0-9_.-] not starting with '.' or '-'", tag)
		}
	}

	domain, path := defaultDomain, repo
	if i := strings.Index(repo, "/"); i >= 0 {
		first := repo[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" {
			domain, path = first, repo[i+1:]
			if !domainRE.MatchString(domain) {
				return invalid("domain %q is not a valid host[:port]", domain)
			}
		}
	}
	if domain == "index.docker.io" {
		domain = defaultDomain
	}
	if domain == defaultDomain && path != "" && !strings.Contains(path, "/") {
		path = "library/" + path
	}

	if path == "" {
		return invalid("repository path is empty")
	}
	for _, c := range strings.Split(path, "/") {
		switch {
		case c == "":
			return invalid("repository path %q has an empty component", path)
		case strings.ToLower(c) != c:
			return invalid("repository path component %q must be lowercase", c)
		case !pathComponentRE.MatchString(c):
			return invalid("repository path component %q must be [a-z0-9] separated by '.', '_', '__' or '-'", c)
		}
	}
	if n := len(domain) + 1 + len(path); n > maxRepoLength {
		return invalid("repository name is %d characters, longer than %d", n, maxRepoLength)
	}
	return reference{domain: domain, path: path, tag: tag}, nil
}
