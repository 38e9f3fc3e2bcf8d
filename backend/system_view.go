package backend

import (
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// replicationStateTTL is how long a ReplicationState answer is reused.
const replicationStateTTL = time.Second

// cachedSystemView answers ReplicationState from memory for up to
// replicationStateTTL. framework.Backend asks for it on every request,
// before looking at whether the operation forwards, and in an external
// plugin each ask is a gRPC call back to Vault: measured with
// scripts/httpbench, it was most of the gap between jwt/issue and a built-in
// engine. No operation here sets ForwardPerformanceStandby or
// ForwardPerformanceSecondary, and a node changing role reloads its mounts,
// so a second of staleness changes nothing; writes on a standby still fail
// with logical.ErrReadOnly and Vault forwards them.
type cachedSystemView struct {
	logical.SystemView

	mu    sync.Mutex
	state consts.ReplicationState
	until time.Time
}

func (c *cachedSystemView) ReplicationState() consts.ReplicationState {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.After(c.until) {
		c.state = c.SystemView.ReplicationState()
		c.until = now.Add(replicationStateTTL)
	}
	return c.state
}
