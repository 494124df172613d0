// The console application (placeholder until the pages land).
