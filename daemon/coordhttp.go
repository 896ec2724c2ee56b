package daemon

import (
	"fmt"
	"net/http"
)

// coordRoutes mounts the coordination API (internal/api/raft.go) on the
// mux; /v1/kv/KEY?consistent=1 and /v1/locks/NAME are routed by hand in
// ServeHTTP, as /v1/kv/KEY is.
func (s *httpServer) coordRoutes() {
	s.mux.HandleFunc("GET /v1/leader", s.leader)
}

func (s *httpServer) leader(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotImplemented, fmt.Errorf("not implemented yet"))
}

// consistentKV serves /v1/kv/KEY?consistent=1.
func (s *httpServer) consistentKV(w http.ResponseWriter, r *http.Request, key string) {
	writeError(w, http.StatusNotImplemented, fmt.Errorf("not implemented yet"))
}

// consistentList serves GET /v1/kv?consistent=1&prefix=P.
func (s *httpServer) consistentList(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotImplemented, fmt.Errorf("not implemented yet"))
}

// locks serves /v1/locks/NAME and /v1/locks/NAME/renew; rest is the
// escaped path after /v1/locks/.
func (s *httpServer) locks(w http.ResponseWriter, r *http.Request, rest string) {
	writeError(w, http.StatusNotImplemented, fmt.Errorf("not implemented yet"))
}
