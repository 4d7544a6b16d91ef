"""carlinkd.voice: offline voice commands and spoken replies.

Audio in (:mod:`.audio`) -> recognizer with a grammar built from the intents (:mod:`.asr`,
:mod:`.grammar`) -> hassil intents (:mod:`.intents`) -> the pure dialog state machine
(:mod:`.dialog`) -> speech out (:mod:`.tts`) and command events on the hub (:mod:`.service`).
"""
