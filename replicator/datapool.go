package replicator

import (
	"sync"

	"github.com/makuo/makuo/replicator/wire"
)

// pooledData is a wire.Data that goes back to its pool once the receiver
// is done with it.
type pooledData struct {
	wire.Data
	pool *dataPool
}

func (d *pooledData) release() {
	d.Data = wire.Data{}
	d.pool.p.Put(d)
}

// dataPool recycles the Data messages of the data path.
type dataPool struct{ p sync.Pool }

func newDataPool() *dataPool {
	dp := &dataPool{}
	dp.p.New = func() any { return &pooledData{pool: dp} }
	return dp
}

func (dp *dataPool) get() *pooledData { return dp.p.Get().(*pooledData) }
