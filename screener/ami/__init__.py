"""Tools that drive Asterisk over its Manager Interface (AMI), with panoramisk."""
