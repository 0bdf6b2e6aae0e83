package pgtest

import (
	"context"
	"fmt"
	"time"

	"github.com/lessorhq/lessor/pkg/devcluster"
)

// cluster is a throwaway PostgreSQL cluster (see package devcluster) with
// the Server that tests see.
type cluster struct {
	dc     *devcluster.Cluster
	server *Server
}

const clusterUser = "lessor_pgtest"

func startCluster() (*cluster, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dc, err := devcluster.Start(ctx, devcluster.Options{
		Prefix:    "lessor-pgtest-",
		Superuser: clusterUser,
		// The cmd scripts run in parallel, each with its own sessions.
		MaxConnections: 300,
	})
	if err != nil {
		return nil, err
	}
	return &cluster{dc: dc, server: &Server{
		Host: dc.Host, Port: dc.Port, User: dc.User, Password: dc.Password, LogFile: dc.LogFile,
	}}, nil
}

func (c *cluster) stop() error {
	if err := c.dc.Stop(); err != nil {
		return fmt.Errorf("stop throwaway cluster: %w", err)
	}
	return nil
}
