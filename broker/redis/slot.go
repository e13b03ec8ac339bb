package redis

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
