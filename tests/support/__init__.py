"""Test support shared by every area: free ports, real servers on loopback."""
