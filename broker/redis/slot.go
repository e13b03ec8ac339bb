package redis

import "sync"

// keySlot is the Redis Cluster hash slot of a topic's keys and channel:
// CRC16 (XMODEM) of the hash tag, which is the topic name itself.
func keySlot(topic string) int {
	var crc uint16
	for i := 0; i < len(topic); i++ {
		crc ^= uint16(topic[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// slots is the number of Redis Cluster hash slots.
const slots = 16384

// slotTag is the shortest hash tag of slot (the first found, over
// 0-9 A-Z a-z, shortest first): a key holding {slotTag(s)} lives in slot
// s. The topic index of a slot is named with it, so that an append script
// reaches its topics' index within their slot.
func slotTag(slot int) string { return slotTags()[slot] }

var slotTags = sync.OnceValue(func() []string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	tags := make([]string, slots)
	left := slots
	buf := make([]byte, 0, 4)
	var walk func(n int)
	walk = func(n int) {
		if left == 0 {
			return
		}
		if len(buf) == n {
			if s := keySlot(string(buf)); tags[s] == "" {
				tags[s] = string(buf)
				left--
			}
			return
		}
		for i := 0; i < len(alphabet) && left > 0; i++ {
			buf = append(buf, alphabet[i])
			walk(n)
			buf = buf[:len(buf)-1]
		}
	}
	for n := 1; left > 0; n++ {
		walk(n)
	}
	return tags
})
