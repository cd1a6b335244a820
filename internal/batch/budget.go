package batch

import (
	"errors"

	"github.com/lionactor/lionactor/budget"
	"github.com/lionactor/lionactor/messages"
)

// memberConfig makes the run a member of the shared budget at Budget.
func (c Config) memberConfig() budget.MemberConfig {
	return budget.MemberConfig{
		Address: c.Budget, Key: c.budgetKey(), ExpectedMembers: c.BudgetMembers, ListenAddr: c.BudgetListen,
		TLS: c.BudgetTLS, Secret: c.BudgetSecret,
	}
}

// memberFields names the settings behind the member's fields.
var memberFields = map[string]string{
	"SharedBudget.Address":    "Budget",
	"SharedBudget.ListenAddr": "BudgetListen",
	"SharedBudget.TLS":        "BudgetTLS.Cert",
	"SharedBudget.Secret":     "BudgetSecret",
}

// checkMember checks the budget settings together, as the member will:
// those of a budget service (a listen address, TLS files, a secret) go
// with a service's host:port, not with a Redis URL, whose user, password
// and scheme say how to reach Redis.
func (c Config) checkMember() error {
	err := c.memberConfig().Validate()
	var ce *messages.ConfigError
	if errors.As(err, &ce) {
		if field, ok := memberFields[ce.Field]; ok {
			return &messages.ConfigError{Field: field, Reason: ce.Reason}
		}
	}
	return err
}
