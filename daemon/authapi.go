package daemon

// Sealed API paths: node-to-node exchanges that travel over the public API
// rather than the replication transport (today POST /v1/faults/table, the
// fault-table exchange of faultsync.go) are sealed with the same envelope
// (envelope.go) when the node has a keyring, so a process without the key
// can neither read a node's table nor merge its own into it, even where
// the API asks for no token. The sending side is peerRoundTripper (every
// daemon-to-daemon HTTP client); the receiving side is serveSealed, in
// front of the path's handler. Bindings:
//
//	request  "api\x00" METHOD " " PATH
//	reply    "reply\x00api " PATH "\x00" request-nonce   (200 replies only; errors are plain JSON)
//
// Add a path to sealedPaths to seal it; clients other than daemons get
// 403 there.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// sealedPaths are the API paths only members may use, sealed both ways.
var sealedPaths = map[string]int64{ // path -> largest plaintext body
	"/v1/faults/table": maxFaultBody,
}

func bindAPI(method, path string) []byte { return []byte("api\x00" + method + " " + path) }
func bindAPIReply(path string, nonce []byte) []byte {
	return append([]byte("reply\x00api "+path+"\x00"), nonce...)
}

// sealRequest seals req's body for a sealed path and returns a function
// that opens the reply; nil, nil for any other path.
func (p *peerRoundTripper) sealRequest(req *http.Request) (*http.Request, func(*http.Response) error, error) {
	limit, ok := sealedPaths[req.URL.Path]
	if !ok || p.seal == nil {
		return req, nil, nil
	}
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
		req.Body.Close()
		if err != nil {
			return nil, nil, err
		}
		body = b
	}
	sealed, nonce, err := p.seal.seal(nil, bindAPI(req.Method, req.URL.Path), body)
	if err != nil {
		return nil, nil, err
	}
	r := req.Clone(req.Context())
	r.Body = io.NopCloser(bytes.NewReader(sealed))
	r.ContentLength = int64(len(sealed))
	r.GetBody = nil
	r.Header.Set(headerSealed, "1")
	open := func(resp *http.Response) error {
		if resp.StatusCode != http.StatusOK {
			return nil
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, limit+envOverhead+1))
		resp.Body.Close()
		if err != nil {
			return err
		}
		plain, _, err := p.seal.open(bindAPIReply(req.URL.Path, nonce), data)
		if err != nil {
			return fmt.Errorf("%s reply: %w", req.URL.Path, p.seal.count(err))
		}
		resp.Body = io.NopCloser(bytes.NewReader(plain))
		resp.ContentLength = int64(len(plain))
		resp.Header.Set("Content-Length", strconv.Itoa(len(plain)))
		return nil
	}
	return r, open, nil
}

// serveSealed serves a sealed path: it opens the request (refusing, with
// 403, one not sealed with a keyring key, stale or replayed), runs next on
// the plaintext and seals a 200 reply. It reports false for any other
// path, or when this node has no keyring.
func (s *httpServer) serveSealed(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
	limit, ok := sealedPaths[r.URL.Path]
	seal := s.a.seal
	if !ok || seal == nil {
		return false
	}
	refuse := func(err error) {
		if errEnvelope(err) {
			seal.count(err)
		}
		s.a.repl.warns.warn(s.a.log, r.RemoteAddr, "sealed api request refused", "path", r.URL.Path, "err", err)
		writeError(w, authCode(err), fmt.Errorf("%s is for members only: %w", r.URL.Path, err))
	}
	if r.Header.Get(headerSealed) != "1" {
		refuse(errEnvMissing)
		return true
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit+envOverhead))
	if err != nil {
		writeError(w, bodyErrorCode(err), fmt.Errorf("%s: %w", r.URL.Path, err))
		return true
	}
	plain, nonce, err := seal.open(bindAPI(r.Method, r.URL.Path), data)
	if err == nil {
		err = seal.fresh(nonce)
	}
	if err != nil {
		refuse(err)
		return true
	}
	r.Body = io.NopCloser(bytes.NewReader(plain))
	r.ContentLength = int64(len(plain))
	rec := &replyRecorder{header: http.Header{}, code: http.StatusOK}
	next.ServeHTTP(rec, r)
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	body := rec.buf.Bytes()
	if rec.code == http.StatusOK {
		body, _, err = seal.seal(nil, bindAPIReply(r.URL.Path, nonce), body)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return true
		}
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rec.code)
	w.Write(body)
	return true
}

// replyRecorder holds a handler's reply so it can be sealed.
type replyRecorder struct {
	header http.Header
	code   int
	wrote  bool
	buf    bytes.Buffer
}

func (r *replyRecorder) Header() http.Header { return r.header }
func (r *replyRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
}
func (r *replyRecorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.buf.Write(b)
}
