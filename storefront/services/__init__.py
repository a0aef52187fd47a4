"""Business rules as plain functions; each public function owns its transaction."""
