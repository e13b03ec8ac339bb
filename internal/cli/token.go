package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/auth"
	"github.com/longpoll/longpoll/client"
)

// tokenConfig is the bearer token of publish, subscribe and bench: given
// on the command line, or kept in a file that another process rotates.
type tokenConfig struct {
	token, file string
}

// tokenFlags adds --token and --token-file; fileUsage tells when the
// command reads the file.
func tokenFlags(fs *flag.FlagSet, c *tokenConfig, fileUsage string) {
	fs.StringVar(&c.token, "token", "", "bearer token sent to a server under --auth jwt (visible to other users in ps: prefer --token-file or LONGPOLL_TOKEN)")
	fs.StringVar(&c.file, "token-file", "", "file holding the bearer token; "+fileUsage)
}

// rereadUsage is the --token-file usage of the commands that read the
// file again through the client's token hook.
const rereadUsage = "read again when the server refuses the token as expired or revoked, so a token rotated on disk is picked up"

// tokenEnv wraps getenv (os.LookupEnv when nil) to hide LONGPOLL_TOKEN and
// LONGPOLL_TOKEN_FILE from parseArgs: fromEnv reads them once the command
// line is known, so that either flag given there wins over both variables
// rather than clashing with one of them.
func tokenEnv(getenv func(string) (string, bool)) (hidden, real func(string) (string, bool)) {
	if getenv == nil {
		getenv = os.LookupEnv
	}
	hidden = func(k string) (string, bool) {
		if k == envName("token") || k == envName("token-file") {
			return "", false
		}
		return getenv(k)
	}
	return hidden, getenv
}

// fromEnv fills c from the environment when neither flag was on the
// command line of fs, and reports the two given together.
func (c *tokenConfig) fromEnv(fs *flag.FlagSet, getenv func(string) (string, bool)) error {
	onLine := false
	fs.Visit(func(f *flag.Flag) { onLine = onLine || f.Name == "token" || f.Name == "token-file" })
	if !onLine {
		c.token, _ = getenv(envName("token"))
		c.file, _ = getenv(envName("token-file"))
	}
	if c.token != "" && c.file != "" {
		return errors.New("give --token or --token-file (LONGPOLL_TOKEN or LONGPOLL_TOKEN_FILE), not both")
	}
	return nil
}

// options returns the client option that sends the token, if any.
//
// The client asks its hook once for the first token, and once more each
// time the server refuses it as expired or revoked. A --token cannot be
// renewed, and a file that still holds the token just refused has
// nothing better: the hook then fails, which ends the command with a
// message instead of retrying a token that will never be accepted.
func (c *tokenConfig) options() []client.Option {
	if c.token == "" && c.file == "" {
		return nil
	}
	var last string
	hook := func(context.Context) (string, error) {
		tok := c.token
		if c.file != "" {
			b, err := os.ReadFile(c.file)
			if err != nil {
				return "", fmt.Errorf("--token-file: %w", err)
			}
			if tok = strings.TrimSpace(string(b)); tok == "" {
				return "", fmt.Errorf("--token-file %s is empty", c.file)
			}
		}
		if last != "" && tok == last {
			if c.file != "" {
				return "", fmt.Errorf("the server refused the token in %s (expired or revoked) and the file holds no new one", c.file)
			}
			return "", errors.New("the server refused the token (expired or revoked); a --token cannot be renewed: use --token-file with a file that is rotated")
		}
		last = tok
		return tok, nil
	}
	return []client.Option{client.WithToken(hook)}
}

// explainAuth adds what to do to a refusal for want of a valid token.
func explainAuth(err error) error {
	var e *client.Error
	if errors.As(err, &e) && e.Code == longpoll.CodeUnauthorized {
		return fmt.Errorf("%w (give a token the server accepts with --token, --token-file or LONGPOLL_TOKEN)", err)
	}
	return err
}

// mintHS256 signs a token with the HS256 secret in secretFile, as
// longpoll token does.
func mintHS256(secretFile, sub string, subscribe, publish []string, ttl time.Duration) (string, error) {
	now := time.Now()
	return auth.SignHS256(auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject: sub, IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Longpoll: auth.Grants{Subscribe: subscribe, Publish: publish},
	}, secretFile)
}
