package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"

	"github.com/golang-jwt/jwt/v5"
)

// keySet is the verification keys in use and the methods they allow.
type keySet struct {
	methods []string
	byKID   map[string]any // JWKS keys with a kid
	all     []any
}

func (ks *keySet) keyFunc(t *jwt.Token) (any, error) {
	if kid, ok := t.Header["kid"].(string); ok && ks.byKID != nil {
		if k, ok := ks.byKID[kid]; ok {
			return k, nil
		}
		return nil, errors.New("unknown kid")
	}
	if len(ks.all) == 1 {
		return ks.all[0], nil
	}
	keys := make([]jwt.VerificationKey, len(ks.all))
	for i, k := range ks.all {
		keys[i] = k
	}
	return jwt.VerificationKeySet{Keys: keys}, nil
}

// MinSecretLen is the shortest HS256 secret accepted, in bytes.
const MinSecretLen = 32

func loadSecret(path string) (*keySet, error) {
	b, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSpace(b)
	if len(b) < MinSecretLen {
		return nil, fmt.Errorf("auth: the secret in %s is %d bytes; use at least %d random bytes (e.g. openssl rand -base64 48)", path, len(b), MinSecretLen)
	}
	return &keySet{methods: []string{"HS256"}, all: []any{b}}, nil
}

// loadPublicKeys reads RSA and ECDSA P-256 public keys from PEM blocks
// (PUBLIC KEY, RSA PUBLIC KEY, CERTIFICATE) or a JWKS document.
func loadPublicKeys(path string) (*keySet, error) {
	b, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	var keys []any
	var byKID map[string]any
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		keys, byKID, err = parseJWKS(t)
	} else {
		keys, err = parsePEM(b)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: %s: %w", path, err)
	}
	ks := &keySet{byKID: byKID, all: keys}
	var rsaKeys, ecKeys bool
	for _, k := range keys {
		switch k := k.(type) {
		case *rsa.PublicKey:
			if k.N.BitLen() < 2048 {
				return nil, fmt.Errorf("auth: %s: RSA keys must have at least 2048 bits", path)
			}
			rsaKeys = true
		case *ecdsa.PublicKey:
			if k.Curve != elliptic.P256() {
				return nil, fmt.Errorf("auth: %s: ECDSA keys must be on P-256 (ES256)", path)
			}
			ecKeys = true
		}
	}
	if rsaKeys {
		ks.methods = append(ks.methods, "RS256")
	}
	if ecKeys {
		ks.methods = append(ks.methods, "ES256")
	}
	return ks, nil
}

func parsePEM(b []byte) ([]any, error) {
	var keys []any
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		var k any
		var err error
		switch blk.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(blk.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(blk.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(blk.Bytes); err == nil {
				k = c.PublicKey
			}
		default:
			return nil, fmt.Errorf("PEM block %q is not a public key (a private key does not belong here)", blk.Type)
		}
		if err != nil {
			return nil, err
		}
		switch k.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey:
		default:
			return nil, fmt.Errorf("unsupported key type %T: use RSA (RS256) or ECDSA P-256 (ES256)", k)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key found")
	}
	return keys, nil
}

type jwk struct {
	Kty, Kid, Use, Alg string
	N, E               string
	Crv, X, Y          string
}

func parseJWKS(b []byte) ([]any, map[string]any, error) {
	var doc struct{ Keys []jwk }
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, nil, fmt.Errorf("not a JWKS document: %w", err)
	}
	var keys []any
	byKID := map[string]any{}
	for i, k := range doc.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var key any
		switch k.Kty {
		case "RSA":
			n, err1 := b64int(k.N)
			e, err2 := b64int(k.E)
			if err1 != nil || err2 != nil || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31 {
				return nil, nil, fmt.Errorf("key %d: bad RSA n or e", i)
			}
			key = &rsa.PublicKey{N: n, E: int(e.Int64())}
		case "EC":
			if k.Crv != "P-256" {
				return nil, nil, fmt.Errorf("key %d: curve %q: only P-256 (ES256) is supported", i, k.Crv)
			}
			x, err1 := b64int(k.X)
			y, err2 := b64int(k.Y)
			if err1 != nil || err2 != nil || x.BitLen() > 256 || y.BitLen() > 256 {
				return nil, nil, fmt.Errorf("key %d: bad EC x or y", i)
			}
			// The uncompressed point 0x04 || x || y, each 32 bytes; the
			// parser rejects a point off the curve before it reaches a
			// verifier.
			point := make([]byte, 65)
			point[0] = 4
			x.FillBytes(point[1:33])
			y.FillBytes(point[33:])
			pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
			if err != nil {
				return nil, nil, fmt.Errorf("key %d: point is not on P-256", i)
			}
			key = pub
		default:
			return nil, nil, fmt.Errorf("key %d: kty %q: use RSA or EC", i, k.Kty)
		}
		keys = append(keys, key)
		if k.Kid != "" {
			byKID[k.Kid] = key
		}
	}
	if len(keys) == 0 {
		return nil, nil, errors.New("the JWKS document holds no signing key")
	}
	if len(byKID) != len(keys) {
		byKID = nil // kids are used only when every key has one
	}
	return keys, byKID, nil
}

func b64int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, errors.New("bad base64url integer")
	}
	return new(big.Int).SetBytes(b), nil
}
