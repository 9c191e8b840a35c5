"""Media and the frame store: knowing a file from its bytes, decoding windows and images, shot boundaries, and extract, which fills the sharded frame store."""
