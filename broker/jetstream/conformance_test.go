package jetstream

import (
	"testing"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/brokertest"
)

func TestConformance(t *testing.T) {
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			url := tg.url(t)
			t.Run("Run", func(t *testing.T) {
				brokertest.Run(t, func(t *testing.T) longpoll.Broker { return open(t, scope(t, url)) })
			})
			t.Run("RunRetention", func(t *testing.T) {
				brokertest.RunRetention(t, func(t *testing.T, n int) longpoll.Broker {
					return open(t, scope(t, url), WithMaxMessages(n))
				})
			})
			t.Run("RunAdmin", func(t *testing.T) {
				brokertest.RunAdmin(t, func(t *testing.T) longpoll.Broker { return open(t, scope(t, url)) })
			})
			t.Run("RunAdminRetention", func(t *testing.T) {
				brokertest.RunAdminRetention(t, func(t *testing.T, n int) longpoll.Broker {
					return open(t, scope(t, url), WithMaxMessages(n))
				})
			})
		})
	}
}
