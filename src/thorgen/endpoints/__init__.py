"""Endpoint families: each file declares its endpoint ids, input and output Structs, lane and run()."""
