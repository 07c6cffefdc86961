"""Small tools the rest of the package builds on, with no knowledge of the network:
the timer heap and the log throttle."""
