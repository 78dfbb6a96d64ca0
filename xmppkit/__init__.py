"""xmppkit"""
