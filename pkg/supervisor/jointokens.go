package supervisor

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Join tokens beyond the server's own are kept as bootstrap-token Secrets in
// kube-system: the controller-manager's token cleaner deletes them when they
// expire, and operators who know kubeadm recognise them. They only admit
// agents to the join endpoints; they carry no API credentials.
const (
	bootstrapTokenType   = "bootstrap.kubernetes.io/token"
	bootstrapTokenPrefix = "bootstrap-token-"
	usageSkiffJoin       = "usage-skiff-agent-join"
	tokenNamespace       = "kube-system"
)

var tokenIDPattern = regexp.MustCompile(`^[a-z0-9]{6}$`)

// JoinToken describes one created token; Secret is only set on creation.
type JoinToken struct {
	ID          string
	Secret      string
	Description string
	Expires     time.Time // zero: never
}

// JoinTokens creates, lists, deletes and checks agent join tokens.
type JoinTokens struct {
	Client func() (kubernetes.Interface, error)
	// Cache is where Valid looks tokens up; only the server's join
	// endpoints check tokens, so the CLI leaves it nil.
	Cache *Cache
}

// Create stores a new token valid for ttl (0: no expiry).
func (j *JoinTokens) Create(ctx context.Context, ttl time.Duration, description string) (JoinToken, error) {
	client, err := j.Client()
	if err != nil {
		return JoinToken{}, err
	}
	id, err := randomString(6)
	if err != nil {
		return JoinToken{}, err
	}
	secret, err := randomString(16)
	if err != nil {
		return JoinToken{}, err
	}
	t := JoinToken{ID: id, Secret: secret, Description: description}
	data := map[string][]byte{
		"token-id":     []byte(id),
		"token-secret": []byte(secret),
		usageSkiffJoin: []byte("true"),
	}
	if description != "" {
		data["description"] = []byte(description)
	}
	if ttl > 0 {
		t.Expires = time.Now().Add(ttl).UTC().Truncate(time.Second)
		data["expiration"] = []byte(t.Expires.Format(time.RFC3339))
	}
	_, err = client.CoreV1().Secrets(tokenNamespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: bootstrapTokenPrefix + id, Namespace: tokenNamespace},
		Type:       bootstrapTokenType,
		Data:       data,
	}, metav1.CreateOptions{})
	if err != nil {
		return JoinToken{}, fmt.Errorf("store join token: %w", err)
	}
	return t, nil
}

// List returns the join tokens, soonest to expire first.
func (j *JoinTokens) List(ctx context.Context) ([]JoinToken, error) {
	client, err := j.Client()
	if err != nil {
		return nil, err
	}
	list, err := client.CoreV1().Secrets(tokenNamespace).List(ctx, metav1.ListOptions{FieldSelector: "type=" + bootstrapTokenType})
	if err != nil {
		return nil, fmt.Errorf("list join tokens: %w", err)
	}
	var out []JoinToken
	for _, s := range list.Items {
		if string(s.Data[usageSkiffJoin]) != "true" {
			continue
		}
		t := JoinToken{ID: string(s.Data["token-id"]), Description: string(s.Data["description"])}
		t.Expires, _ = time.Parse(time.RFC3339, string(s.Data["expiration"]))
		out = append(out, t)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out, nil
}

// Delete removes a token; agents already joined keep working.
func (j *JoinTokens) Delete(ctx context.Context, id string) error {
	if !tokenIDPattern.MatchString(id) {
		return fmt.Errorf("invalid token ID %q; IDs are the 6 characters after \"::\" in the token, as shown by \"skiff token list\"", id)
	}
	client, err := j.Client()
	if err != nil {
		return err
	}
	err = client.CoreV1().Secrets(tokenNamespace).Delete(ctx, bootstrapTokenPrefix+id, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("no join token with ID %q; list them with \"skiff token list\"", id)
	}
	return err
}

// Valid reports whether id and secret name a live join token. It reads the
// cache only, so a flood of guesses costs the apiserver nothing.
func (j *JoinTokens) Valid(id, secret string) (bool, error) {
	if !tokenIDPattern.MatchString(id) || j.Cache == nil {
		return false, nil
	}
	s, err := j.Cache.joinToken(id)
	if err != nil || s == nil {
		return false, err
	}
	if s.Type != bootstrapTokenType || string(s.Data[usageSkiffJoin]) != "true" {
		return false, nil
	}
	if exp := string(s.Data["expiration"]); exp != "" {
		t, err := time.Parse(time.RFC3339, exp)
		if err != nil || time.Now().After(t) {
			return false, nil
		}
	}
	return subtle.ConstantTimeCompare(s.Data["token-secret"], []byte(secret)) == 1, nil
}

const tokenAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

func randomString(n int) (string, error) {
	b := make([]byte, n)
	for i := range b {
		k, err := rand.Int(rand.Reader, big.NewInt(int64(len(tokenAlphabet))))
		if err != nil {
			return "", errors.New("read random bytes: " + err.Error())
		}
		b[i] = tokenAlphabet[k.Int64()]
	}
	return string(b), nil
}
