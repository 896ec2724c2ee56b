package store_test

import (
	"testing"

	"github.com/peerctl/peerctl/store"
	"github.com/peerctl/peerctl/store/storetest"
)

func TestMemBackend(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Backend { return store.NewMemBackend() })
}
